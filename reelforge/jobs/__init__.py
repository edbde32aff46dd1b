"""The job system: records and the job log, the runtime every entry point submits through, workers, the output layout, webhooks and retention."""
