"""The shortest-path processor: reference algorithms, synthetic graphs, the network,
hint-supervised pretraining, tree accuracy metrics and ``nareta processor predict``."""
