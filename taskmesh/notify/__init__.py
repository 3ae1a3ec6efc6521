"""Notifications: what an event is, when one happened, how it is signed, posted and retried.

Pure policies live here (events, signing, retries, payloads, targets); the repository is
taskmesh.db.notifications, the loops that detect and deliver are the scheduler's
(scheduler/notify_scan.py, scheduler/notify_delivery.py).
"""
