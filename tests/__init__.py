"""The test suite: folders mirror the packages; shared helpers are ``tests.helpers``."""
