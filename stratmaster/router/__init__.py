"""The router: policy-driven model selection with fallbacks, cooldowns, budgets, a cost
ledger and a learning recommender (issue 5).

- `catalogue`: the catalogue and policy models and their loader (configs/router/models.yaml).
- `providers`: the OpenAI-compatible client and the offline `local-extractive` provider.
- `service`: `Router` (decide, complete with fallbacks, budgets, feedback).
- `bandit`: recommender v2 (Thompson sampling) and the reward.
- `repository`: ledger, spend and bandit rows.
- `schemas`: the API's request and response shapes.
"""
