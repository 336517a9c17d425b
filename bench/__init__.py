"""Benchmarks of theater-py against bare Pykka, raw requests, the openai SDK and LiteLLM.

``python -m bench`` measures, in one run and against one loopback fake provider:

1. :mod:`bench.hop`: a request round trip through the runtime against a bare Pykka ask;
2. :mod:`bench.proxy`: one completion through the OpenAI proxy actor against each client;
3. :mod:`bench.concurrency`: a burst of slow completions from many threads;
4. :mod:`bench.footprint`: import and start times, memory and threads.

It writes ``bench/results/<date>.json`` and prints Markdown tables. See
``docs/performance.md`` for the latest numbers and how to reproduce them.
"""
