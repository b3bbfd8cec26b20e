"""mtml: the ROS 2 perception node, a thin adapter over mtml_core."""
