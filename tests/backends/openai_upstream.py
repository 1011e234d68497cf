"""A tiny OpenAI-compatible server for the proxy backend's tests, run as a real HTTP server process:

    python tests/backends/openai_upstream.py --port 8123 [--token-delay 0.02]

``POST /v1/chat/completions`` answers with the builtin backend (stream and non-stream, ``stream_options.include_usage``
honoured, ``stop`` and ``max_tokens`` honoured, one token per chunk, like vLLM / llama-server). Special models:
``broken`` answers HTTP 500, ``garbage`` answers 200 with a body that is not JSON, ``midstream-error`` streams two
tokens and then an error event. ``GET /debug/last`` returns the last request body and whether its stream was
abandoned by the client (``GET /debug/abandoned``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402

from offchain.backends import BuiltinBackend  # noqa: E402
from offchain.inference import ChatMessage, GenParams  # noqa: E402


def create_app(token_delay: float = 0.0) -> FastAPI:
    app = FastAPI()
    backend = BuiltinBackend(name="upstream-model")
    state: dict = {"last": None, "abandoned": 0, "completed_streams": 0}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "upstream-model", "object": "model", "created": 0, "owned_by": "t"}]}

    @app.get("/debug/last")
    def last():
        return {"body": state["last"], "abandoned": state["abandoned"], "completed": state["completed_streams"]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["last"] = body
        model = body.get("model")
        if model == "broken":
            return JSONResponse({"error": {"message": "model crashed", "type": "server_error"}}, status_code=500)
        if model == "garbage":
            return PlainTextResponse("this is not json")
        messages = [ChatMessage(role=m["role"], content=m["content"]) for m in body["messages"]]
        params = GenParams(max_tokens=body.get("max_tokens") or 16, stop=body.get("stop"))
        base = {"id": "chatcmpl-test", "created": 0, "model": model}
        if not body.get("stream"):
            g = backend.generate(messages, params)
            return {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                             "finish_reason": g.finish_reason}],
                "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.output_tokens,
                          "total_tokens": g.prompt_tokens + g.output_tokens},
            }

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pieces: list[str] = []
        done = threading.Event()
        result: dict = {}

        def run():
            result["g"] = backend.generate(messages, params, pieces.append)
            done.set()

        threading.Thread(target=run, daemon=True).start()

        def chunk(delta: dict, finish=None) -> str:
            event = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(event)}\n\n"

        async def events():
            sent = 0
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    finished = done.is_set()
                    if not finished:
                        await asyncio.sleep(0.001)
                    while sent < len(pieces):
                        if token_delay:
                            await asyncio.sleep(token_delay)
                        yield chunk({"content": pieces[sent]})
                        sent += 1
                        if model == "midstream-error" and sent == 2:
                            yield f"data: {json.dumps({'error': {'message': 'GPU fell over'}})}\n\n"
                            return
                    if finished and sent == len(pieces):
                        break
                g = result["g"]
                yield chunk({}, g.finish_reason)
                if include_usage:
                    usage = {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.output_tokens,
                             "total_tokens": g.prompt_tokens + g.output_tokens}
                    yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
                state["completed_streams"] += 1
            except BaseException:  # the client went away (generator closed)
                state["abandoned"] += 1
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(create_app(args.token_delay), host="127.0.0.1", port=args.port, log_level="warning")
