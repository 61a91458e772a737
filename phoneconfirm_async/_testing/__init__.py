"""What phoneconfirm_async.testing gives: test doubles and the store contract."""
