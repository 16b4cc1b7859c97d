"""How long a client waits before its next reconnection attempt: socket.io-client's exponential backoff.

socket.io-client 4.8 (`lib/contrib/backo2.ts`, used by `Manager.reconnect`) computes, for the n-th attempt
after a drop (n from 0):

    ms = reconnectionDelay * 2 ** n
    ms = ms -/+ floor(rand * randomizationFactor * ms)   (one draw for the size and the sign)
    delay = min(ms, reconnectionDelayMax)

with the defaults 1000 ms, 5000 ms and 0.5. The jitter is applied before the cap, so once `ms * (1 - r)`
passes the maximum every client waits exactly the maximum: from the fifth attempt on with the defaults.
`backoff_delay` is that formula in seconds, with a uniform draw in [-r, +r] (socket.io-client derives the
sign from the same draw as the size, which leaves every other tenth of the range unused; the bounds and the
mean are the same).

python-socketio 5.x (`_handle_reconnect` in its clients) takes the same three settings with the same
defaults (1 s, 5 s, 0.5) but caps first and then adds `randomization_factor * uniform(-1, 1)` *seconds*: its
0.5 is +/- 0.5 s at every attempt, at the cap too, whatever the delay. The lab follows socket.io-client.
"""

from __future__ import annotations

import random

#: each attempt waits twice as long as the one before (socket.io-client's `factor`, python-socketio's too)
FACTOR = 2.0
#: attempts past this one wait as this one does: 2**64 times the initial delay is beyond any maximum
MAX_DOUBLINGS = 64


def backoff_delay(attempt: int, initial: float, maximum: float, randomization: float,
                  rng: random.Random) -> float:
    """Seconds to wait before attempt `attempt` (0: the first after a drop): `initial * 2**attempt`, moved by
    up to +/- `randomization` of itself, then capped at `maximum`. With no randomization nothing is drawn
    from `rng`, and the delay is exact."""
    if attempt < 0 or initial <= 0 or maximum < initial or not 0 <= randomization <= 1:
        raise ValueError(f"backoff_delay({attempt}, {initial}, {maximum}, {randomization}): need attempt >= 0, "
                         "0 < initial <= maximum and 0 <= randomization <= 1")
    delay = initial * FACTOR ** min(attempt, MAX_DOUBLINGS)
    if randomization:
        delay *= 1 + randomization * (2 * rng.random() - 1)
    return min(delay, maximum)
