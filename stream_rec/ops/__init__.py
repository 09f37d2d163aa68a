"""Running it: the local broker (kafka_local.py), topic files (topics.py), Kafka clients for the command line
(clients.py), worker processes (processes.py), the end-to-end benchmark and its bare-Faust ceiling (bench.py,
ceiling.py) and the demo (demo.py)."""
