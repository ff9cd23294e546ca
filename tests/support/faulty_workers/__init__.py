"""`bordermon worker` with a fault planted in the test process (never in the product): scripts
that support.workers runs by path (POISONED_WORKER_COMMAND, DYING_WORKER_COMMAND), and whose
faults the chaos suite's worker reuses."""
