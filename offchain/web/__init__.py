"""``opg web``: a local web app for one payer (chat with the credit row, the path of each answer's OPG, the payer's
and the network's views, live charts), built on the client SDK. See docs/web.md."""
