from __future__ import annotations

from rotator.management.commands import rotate_field


class Command(rotate_field.Command):
    help = (
        "Give every Ticket a fresh token: sharded async workers, exact resume after "
        "Ctrl-C or a crash, one progress bar with time remaining."
    )
    target = "tickets.Ticket.token"
