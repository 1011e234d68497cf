"""``opg web``: a local web app for one payer (chat with the credit row, the path of each answer's OPG, the payer's
and the network's views, live charts), built on the client SDK. See docs/web.md.

- ``app``: the FastAPI app and ``Web`` (wallet, relayer client, index, seasons) behind its pages and JSON API.
- ``index``: what the app knows from the chain's events and the relayer's API, refreshed incrementally.
- ``season``: the payer's season standing and the signal one answer added to it.
- ``fmt``: numbers for people (OPG, gas, times, short hashes).
- ``launch``: start ``opg web`` as one more process of a devkit ``System``.
- ``cli``: ``opg web``.
"""
