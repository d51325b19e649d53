"""The reference for bench/prefix.py: the same 302 as the prefix, recording nothing."""


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    location = b"https://" + scope["raw_path"].split(b"/", 3)[3]
    if scope["query_string"]:
        location += b"?" + scope["query_string"]
    headers = [(b"location", location), (b"cache-control", b"private, no-cache"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
