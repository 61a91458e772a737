"""The blocking face: ``SyncPhoneConfirmClient`` and its scheduler and sessions, which run
the async core on one event loop in one background thread."""
