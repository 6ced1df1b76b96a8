"""Developer tools, outside the pipeline's stages: sample traffic (``mediapulse simulate``) and a Kinesis
producer for local streams and benchmarks."""
