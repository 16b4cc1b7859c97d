"""Load runs on locust: the users (`users`, over `wire`), one step of offered load (`step`), what the users
counted (`tally`) and the capacity ladder's rules (`ladder`)."""
