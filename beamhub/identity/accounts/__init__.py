"""Accounts: users, their roles, groups and API tokens, and the host accounts and identity sources behind them."""
