"""Slack adapter: the Bolt app, commands, Block Kit builders, and the outbox that calls the Web API."""
