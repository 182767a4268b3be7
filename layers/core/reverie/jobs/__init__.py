"""Jobs, from the producer's side: the job message, its handover to the topic (through the outbox), its
status per tier, and the tools for the dead-letter queues."""
