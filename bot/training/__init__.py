"""The trainers' workflow: review what the bot misunderstood, turn it into
training data, retrain, evaluate against production, deploy and roll back.

Everything lives beside the call store (same database): the review inbox reads
its ``turns``; decisions, flags, jobs and deployments have their own tables
(``bot.training.schema``). The CLI (``voicebot train``) and the console's
trainer pages call the same functions.
"""
