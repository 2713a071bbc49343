"""CME-style FIX 4.4 market data over a QuickFIX initiator: logon -> 35=V -> 35=W snapshots + 35=X incrementals."""
