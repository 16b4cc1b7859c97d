"""Benchmarks (not tests): each measures one thing over several runs and writes results/bench/.
`python -m labs.bench BENCH` runs one (`__main__`); every bench is a module with `parser(prog)` and
`run(args)`, started the same way and ending with the same exit codes (`common`). Capacity and replicas
climb ladders (`climb`); partitioning compares the setups of the connection bench (`connections/`).
Nothing outside this package imports it, and it does not import the cli."""
