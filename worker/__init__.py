"""The worker: the Metriport API client, the reconciliation run, and the RQ jobs around them.

It imports only ``inbox`` (never the receiver or the simulator) and nothing from Flask, so a
scheduled run starts quickly.
"""
