"""One router per resource; each route is thin: authenticate (deps), call the store, shape JSON."""
