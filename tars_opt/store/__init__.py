"""The database interface table owners use: connections, transactions, migrations, files."""
