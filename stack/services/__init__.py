"""Local services of the stack, each with up/down/status under one state dir (see `stack.services.stack`)."""
