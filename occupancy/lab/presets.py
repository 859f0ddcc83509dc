"""Named starting points for `occupancy train --preset`: kept apart from train.py so that the command
line lists them without importing PyTorch."""

PRESETS = {
    # The seed paper: batch 32, Adam, lr 1e-4, 10 epochs, cross-entropy, its own recipe, no extras.
    "paper": dict(batch_size=32, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="constant",
                  epochs=10, recipe="paper", paper_share=0.0, scene_share=0.0, reverb_share=0.0, patience=0),
    "default": {},
}
