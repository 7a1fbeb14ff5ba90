"""Figure builders: plain data in, `plotly.graph_objects.Figure` out, shared by the dashboard and notebooks."""
