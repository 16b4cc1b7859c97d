"""wslab: scaling WebSocket services across servers, on real containers, with message accounting."""
