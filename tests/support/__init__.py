"""Test plumbing shared by the suite: HTTP clients and servers, subprocesses, paths, the browser, fakes."""
