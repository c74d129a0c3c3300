"""A small bilingual sample shop, generated on the spot, for `shoprec demo` and the tests.

Products are drawn (a silhouette per category in the product's colour) so the image encoder
sees real pixels; behaviour is simulated from shopper personas with complementary baskets
(T-shirt + jeans, running shoes + sports socks, phone + phone case) so every recommender has
something true to find.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "black": ("黑色", (25, 25, 25)),
    "white": ("白色", (240, 240, 240)),
    "red": ("红色", (200, 30, 40)),
    "blue": ("蓝色", (30, 70, 190)),
    "green": ("绿色", (40, 150, 70)),
    "pink": ("粉色", (240, 150, 180)),
}


@dataclass(frozen=True)
class Kind:
    key: str
    category: str
    zh: str
    en: str
    description_zh: str
    description_en: str
    price: float
    shape: str


KINDS = [
    Kind("tshirt", "T恤", "纯棉短袖T恤", "cotton short-sleeve T-shirt", "夏季纯棉面料，透气舒适，男女同款", "breathable summer cotton tee", 59.0, "tshirt"),
    Kind("jeans", "牛仔裤", "修身牛仔裤", "slim fit jeans", "弹力牛仔布，修身直筒版型", "stretch denim, slim straight leg", 199.0, "trousers"),
    Kind("runner", "跑鞋", "轻量缓震跑鞋", "lightweight cushioned running shoes", "网面透气，适合长跑训练", "breathable mesh for long runs", 399.0, "shoe"),
    Kind("socks", "运动袜", "运动中筒袜", "sports crew socks", "吸汗速干，三双装", "sweat-wicking, pack of three", 29.0, "sock"),
    Kind("phone", "手机", "智能手机 128GB", "smartphone 128GB", "6.1英寸屏幕，双摄像头", "6.1 inch screen, dual camera", 2999.0, "phone"),
    Kind("case", "手机壳", "硅胶手机壳", "silicone phone case", "防摔软壳，贴合机身", "shock-absorbing soft case", 39.0, "case"),
    Kind("handbag", "手提包", "真皮手提包", "leather handbag", "头层牛皮，大容量通勤包", "full-grain leather commuter bag", 899.0, "bag"),
    Kind("mug", "马克杯", "陶瓷马克杯", "ceramic mug", "350毫升，可用洗碗机清洗", "350 ml, dishwasher safe", 45.0, "mug"),
]

#: Which kinds shoppers buy together (the truth the complementary recommender should find).
BASKETS = [("tshirt", "jeans"), ("runner", "socks"), ("phone", "case"), ("handbag", "mug")]


def _draw(shape: str, rgb: tuple[int, int, int], variant: int) -> Image.Image:
    image = Image.new("RGB", (224, 224), (250, 248, 244))
    draw = ImageDraw.Draw(image)
    o = variant * 4
    shapes = {
        "tshirt": lambda: draw.polygon([(60, 50), (95, 40), (130, 40), (165, 50), (195, 85), (170, 105), (160, 95),
                                        (160, 190), (65, 190), (65, 95), (55, 105), (30, 85)], fill=rgb, outline=(60, 60, 60)),
        "trousers": lambda: draw.polygon([(75, 30), (150, 30), (160, 200), (125, 200), (112, 90), (100, 200), (65, 200)],
                                         fill=rgb, outline=(60, 60, 60)),
        "shoe": lambda: draw.polygon([(30, 140), (90, 100), (120, 120), (190, 140), (195, 165), (30, 165)],
                                     fill=rgb, outline=(60, 60, 60)),
        "sock": lambda: draw.polygon([(95, 30), (135, 30), (135, 150), (170, 175), (160, 200), (95, 175)],
                                     fill=rgb, outline=(60, 60, 60)),
        "phone": lambda: draw.rounded_rectangle([75, 25, 150, 200], radius=14, fill=(20, 20, 20), outline=rgb, width=6),
        "case": lambda: draw.rounded_rectangle([70, 20, 155, 205], radius=18, outline=rgb, width=14),
        "bag": lambda: (draw.rectangle([45, 90, 180, 190], fill=rgb, outline=(60, 60, 60)),
                        draw.arc([80, 40, 145, 120], 180, 360, fill=(60, 60, 60), width=8)),
        "mug": lambda: (draw.rectangle([60, 70, 140, 180], fill=rgb, outline=(60, 60, 60)),
                        draw.ellipse([130, 95, 175, 150], outline=rgb, width=10)),
    }
    shapes[shape]()
    if o:
        image = image.transform(image.size, Image.AFFINE, (1, 0, -o, 0, 1, o // 2), fillcolor=(250, 248, 244))
    return image


def build_demo_catalog(folder: Path, seed: int = 7) -> tuple[Path, Path]:
    """Write catalog.jsonl, images/ and events.jsonl under folder; return (catalog, events)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    items = []
    for kind in KINDS:
        for variant, (colour, (colour_zh, rgb)) in enumerate(COLOURS.items()):
            item_id = f"{kind.key}-{colour}"
            chinese = variant % 2 == 0
            title = f"{colour_zh}{kind.zh}" if chinese else f"{colour} {kind.en}"
            description = kind.description_zh if chinese else kind.description_en
            image_rel = f"images/{item_id}.png"
            _draw(kind.shape, rgb, variant % 3).save(folder / image_rel)
            items.append({
                "id": item_id, "title": title, "description": description, "category": kind.category,
                "brand": "shoprec demo", "price": round(kind.price * (0.9 + 0.05 * variant), 2),
                "in_stock": variant != 5, "image": image_rel,
                "attributes": {"colour": colour, "颜色": colour_zh, "product_code": kind.key},
                "created_at": "2026-01-01T00:00:00Z",
            })
    with (folder / "catalog.jsonl").open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")

    by_kind: dict[str, list[str]] = {}
    for item in items:
        by_kind.setdefault(item["attributes"]["product_code"], []).append(item["id"])
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    events = []
    for user in range(40):
        user_id = f"u{user:03d}"
        first, second = BASKETS[user % len(BASKETS)]
        for day in range(3):
            ts = start + timedelta(days=day * 7 + user % 5, hours=user % 12)
            session = f"{user_id}-s{day}"
            a, b = rng.choice(by_kind[first]), rng.choice(by_kind[second])
            for item_id, kind in ((a, "view"), (a, "cart"), (b, "view"), (a, "purchase"), (b, "purchase")):
                events.append({"user_id": user_id, "item_id": item_id, "type": kind,
                               "ts": ts.isoformat().replace("+00:00", "Z"), "session_id": session})
                ts += timedelta(minutes=3)
    with (folder / "events.jsonl").open("w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
    return folder / "catalog.jsonl", folder / "events.jsonl"
