"""The relationship ledger: contracts and subscriptions, payments, reminders and spending."""
