"""Hand out synthetic images, newest first, so a stock Slicer's "Next Sample" loads them with their masks."""

from __future__ import annotations

from monailabel.interfaces.tasks.strategy import Strategy

from ..infers.synthesis import SYNTHETIC_PREFIX


class NextSynthetic(Strategy):
    def __init__(self):
        super().__init__("Next synthetic (gem3d) image, newest first")
        self.served: set[str] = set()

    def __call__(self, request, datastore):
        ids = [i for i in datastore.list_images() if i.startswith(SYNTHETIC_PREFIX)]
        if not ids:
            return None
        ids.sort(key=lambda i: datastore.get_image_info(i).get("ts", 0), reverse=True)
        fresh = [i for i in ids if i not in self.served] or ids
        chosen = fresh[0]
        self.served.add(chosen)
        return {"id": chosen}
