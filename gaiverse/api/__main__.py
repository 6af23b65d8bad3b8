"""`python -m gaiverse.api`: serve the API on the configured host and port."""

from gaiverse.api.app import main

main()
