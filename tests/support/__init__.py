"""What the tests share: the one model spy, the one client swap, handler loading, events, and helpers that
read the real engines."""
