"""Identity and access: users, sign-up and login, tokens, roles and permissions, API keys."""
