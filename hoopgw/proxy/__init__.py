"""Protocol listeners: the gateway's drop-in ports."""
