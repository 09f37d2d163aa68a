"""What crosses the broker: input events (events.py), the output messages (messages.py), the dead-letter envelope
(deadletter.py) and the control topic's commands (control.py). Pure: no Kafka client, no model."""
