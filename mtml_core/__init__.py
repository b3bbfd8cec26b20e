"""mtml_core: multi-task meta-learning with attentive feature reuse (pure PyTorch, no ROS)."""
