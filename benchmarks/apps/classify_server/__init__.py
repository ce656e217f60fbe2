"""Classification service benchmark app: ImageServer -> BatchClassify (MobileNetV2, batch_recv) -> JSON."""
