"""RabbitMQ: pika's asyncio adapter wrapped in futures, and the queue topology."""
