"""A local stand-in for Metriport: the message list/get API with its real pagination, fault
injection, and a signed webhook sender with chaos. See ``docs/simulator.md``.

Imports nothing from the project but ``inbox.signing``.
"""

from simulator.data import Mailbox
from simulator.faults import Faults
from simulator.sender import WebhookSender
from simulator.server import Simulator

__all__ = ["Faults", "Mailbox", "Simulator", "WebhookSender"]
