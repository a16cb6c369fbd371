"""Money: prices, the ledger (owner of `calls`), the budget, periods and alert channels."""
