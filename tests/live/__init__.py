"""The live suite: the OpenAI proxy against a real llama-cpp-python server (``make test-live``)."""
