"""metriport-inbox core: settings, Redis connections, the message store and the feed.

Nothing here imports ``receiver``, ``worker``, ``simulator`` or ``cli``: they build on this package.
"""
