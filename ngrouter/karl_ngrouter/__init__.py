"""Karl's NG router (`karl-router`): the one NG address a SIP proxy talks to; it places each call on a
media node of the fleet and sends every command of the call to that node (docs/clustering.md)."""
