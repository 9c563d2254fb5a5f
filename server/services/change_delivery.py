"""How far each schedule change has reached participants' devices, so that organizers know whom to phone.

A device has pulled a change when the server served it, in a pull that caught up, a feed position at
or past the one where the change entered the feed (migration 9 keeps both). The position is the
change's own, not the visit's latest: a device that pulled a move before a later edit of the visit
has the move all the same. Only participants count: organizers' and hosts' devices never do.
"""

from schemas.accounts import Account
from schemas.schedule import ChangeDeliveries, ChangeDelivery, PendingAccount
from server.services.schedule_changes import follows, parse_since, pick_language, stamp, told_changes
from server.storage.accounts import usable_accounts
from server.storage.pull_positions import pull_positions, visit_change_positions, visit_feed_positions
from server.storage.unit import Store


def change_deliveries(
    db: Store, account: Account, event_id: str, since: str | None, lang: str | None
) -> ChangeDeliveries:
    """Every change after ``since`` (told in ``lang``), with how many participants and devices have it."""
    after = stamp(parse_since(since))
    language = pick_language(lang, account.language)
    with db.read() as tx:
        told, _ = told_changes(tx, event_id, after, language)
        participants = usable_accounts(tx, event_id, "participant")
        devices = pull_positions(tx, [p.id for p in participants])
        change_positions = visit_change_positions(tx, event_id)
        feed_positions = visit_feed_positions(tx, event_id)
    deliveries: list[ChangeDelivery] = []
    for item, visit, before in told:
        # A "new" visit has no history entry: its feed row is its first state. An entry written
        # before positions were kept counts from the visit's latest state (never too many).
        position = change_positions.get((item.visit_id, item.at)) or feed_positions.get(item.visit_id, 0)
        readers = [p for p in participants if follows(p, visit, before)]
        pending: list[PendingAccount] = []
        pulled_devices = all_devices = 0
        for reader in readers:
            own = devices.get(reader.id, [])
            pulled = sum(1 for seq in own if seq >= position)
            pulled_devices += pulled
            all_devices += len(own)
            if pulled == 0:
                pending.append(
                    PendingAccount(id=reader.id, name=reader.name, group_id=reader.group_id, devices=len(own))
                )
        deliveries.append(
            ChangeDelivery(
                change=item,
                accounts=len(readers),
                accounts_pulled=len(readers) - len(pending),
                devices=all_devices,
                devices_pulled=pulled_devices,
                accounts_pending=pending,
            )
        )
    return ChangeDeliveries(event_id=event_id, since=after, lang=language, changes=deliveries)
