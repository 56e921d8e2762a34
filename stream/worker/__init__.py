"""The Faust worker process: app wiring, delivery, membership, topics, the batch step, plans and windows."""
