"""The DKIM worker process's entry point (`mailauth.dkim_verify.WorkerPool` starts it): a module of its own so
that the verifier's classes keep their import name in the worker."""

from __future__ import annotations

import sys

from postoffice.mailauth.dkim_verify import serve_worker

if __name__ == "__main__":
    serve_worker(sys.argv[1:])
