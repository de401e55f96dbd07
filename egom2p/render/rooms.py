"""Procedural indoor rooms (floor, walls, ceiling lights, pictures, furniture, clutter) from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mesh_builder import MeshBuilder, _srgb_to_linear
from .scene_model import Scene


# --- palettes (sRGB) -----------------------------------------------------------------------------------

WALL_PAINTS = [(0.93, 0.91, 0.86), (0.85, 0.88, 0.90), (0.90, 0.84, 0.76), (0.78, 0.84, 0.78), (0.95, 0.95, 0.95),
               (0.86, 0.80, 0.86), (0.70, 0.78, 0.86), (0.92, 0.86, 0.70)]
WOODS = [(0.55, 0.38, 0.22), (0.70, 0.52, 0.32), (0.42, 0.27, 0.16), (0.80, 0.66, 0.46), (0.30, 0.20, 0.13)]
FABRICS = [(0.25, 0.32, 0.55), (0.60, 0.20, 0.18), (0.35, 0.50, 0.35), (0.55, 0.55, 0.58), (0.80, 0.70, 0.50),
           (0.20, 0.20, 0.22), (0.70, 0.45, 0.60)]
BRIGHTS = [(0.90, 0.20, 0.15), (0.15, 0.45, 0.85), (0.95, 0.80, 0.10), (0.20, 0.70, 0.30), (0.95, 0.50, 0.10),
           (0.60, 0.25, 0.75), (0.95, 0.95, 0.92), (0.10, 0.10, 0.12), (0.10, 0.65, 0.70)]
FLOORS = [("planks", WOODS), ("checker", [(0.85, 0.85, 0.82), (0.6, 0.6, 0.62), (0.75, 0.70, 0.62)]),
          ("noise", FABRICS)]


def _pick(rng, palette):
    return _srgb_to_linear(palette[rng.integers(len(palette))]) * rng.uniform(0.85, 1.1)


# --- procedural rooms ---------------------------------------------------------------------------------


@dataclass
class RoomConfig:
    """Ranges of the procedural room generator (metres)."""

    width: tuple[float, float] = (4.5, 8.0)  # x extent
    depth: tuple[float, float] = (4.5, 8.0)  # z extent
    height: tuple[float, float] = (2.5, 3.0)
    furniture: tuple[int, int] = (5, 10)
    floor_clutter: tuple[int, int] = (2, 6)
    pictures: tuple[int, int] = (2, 6)
    min_free_fraction: float = 0.35  # furniture placement stops before the floor gets more crowded


def _furniture_kinds():
    # kind: (footprint w range, footprint d range, against-wall preference)
    return {
        "table": ((0.8, 1.6), (0.6, 1.0), 0.3),
        "shelf": ((0.6, 1.4), (0.3, 0.45), 1.0),
        "cabinet": ((0.5, 1.2), (0.4, 0.6), 1.0),
        "sofa": ((1.5, 2.2), (0.8, 1.0), 0.8),
        "bed": ((1.4, 1.8), (1.9, 2.1), 0.9),
        "chair": ((0.45, 0.55), (0.45, 0.55), 0.2),
        "plant": ((0.35, 0.5), (0.35, 0.5), 0.6),
        "lamp": ((0.3, 0.4), (0.3, 0.4), 0.7),
    }


def procedural_room(seed: int | np.random.SeedSequence, config: RoomConfig | None = None) -> Scene:
    """A furnished room from a seed (deterministic). The world is y-up with the floor at y = 0."""
    cfg = config or RoomConfig()
    rng = np.random.default_rng(seed)
    mb = MeshBuilder(rng)
    W = rng.uniform(*cfg.width)
    D = rng.uniform(*cfg.depth)
    H = rng.uniform(*cfg.height)

    # floor
    ftex, fpal = FLOORS[rng.integers(len(FLOORS))]
    fcol = _pick(rng, fpal)
    floor = mb.begin_object("floor", "floor", target=False)
    fcell = {"planks": 0.18, "checker": rng.uniform(0.3, 0.6), "noise": 0.2}[ftex]
    fmat = mb.random_material(0.08) if ftex != "checker" else 0
    mb.quad_grid([0, 0, 0], [0, 0, D], [W, 0, 0], fcell, fcol, floor, fmat, ftex, jitter=0.04, max_cells=128)

    # walls (inward-facing), with a skirting band and a paint
    paint = _pick(rng, WALL_PAINTS)
    skirt = _pick(rng, WOODS) * 0.8
    wall = mb.begin_object("walls", "wall", target=False)
    wmat = mb.random_material(0.05)
    band = rng.uniform(0.08, 0.12) if rng.random() < 0.5 else rng.uniform(0.8, 1.0)  # skirting or wainscot
    wall_tex = "stripes" if rng.random() < 0.3 else "plain"
    corners = [(np.array([0, 0, 0.0]), np.array([W, 0, 0.0])), (np.array([W, 0, 0.0]), np.array([W, 0, D])),
               (np.array([W, 0, D]), np.array([0, 0, D])), (np.array([0, 0, D]), np.array([0, 0, 0.0]))]
    for a, b in corners:
        e = b - a
        mb.quad_grid(a, e, [0, band, 0], 0.25, skirt, wall, 0, "plain", jitter=0.03)
        mb.quad_grid(a + [0, band, 0], e, [0, H - band, 0], 0.3, paint, wall, wmat, wall_tex, jitter=0.025,
                     color2=paint * 0.85)
    # ceiling (facing down) with light panels
    ceil = mb.begin_object("ceiling", "ceiling", target=False)
    mb.quad_grid([0, H, 0], [W, 0, 0], [0, 0, D], 0.5, _srgb_to_linear((0.95, 0.95, 0.93)), ceil, 0, "plain", 0.02)
    nl = 1 + int(W * D > 30)
    lights = []
    for k in range(nl):
        cx = W * (k + 1) / (nl + 1) if W >= D else W / 2
        cz = D * (k + 1) / (nl + 1) if W < D else D / 2
        lp = mb.begin_object(f"light_{k}", "light", target=True)
        mb.box([cx - 0.3, H - 0.03, cz - 0.3], [cx + 0.3, H - 0.001, cz + 0.3], [0.95, 0.95, 0.9], lp, faces="y")
        lights.append([cx, H - 0.25, cz, rng.uniform(2.5, 3.5) * (W * D / 25) ** 0.5 / nl ** 0.5])

    # pictures / posters / windows on walls (noise or stripes: strong texture)
    for k in range(rng.integers(cfg.pictures[0], cfg.pictures[1] + 1)):
        side = rng.integers(4)
        a, b = corners[side]
        e = (b - a) / np.linalg.norm(b - a)
        length = np.linalg.norm(b - a)
        pw, ph = rng.uniform(0.4, 1.2), rng.uniform(0.4, 0.9)
        s = rng.uniform(0.2, max(0.25, length - pw - 0.2))
        y = rng.uniform(1.1, max(1.15, H - ph - 0.2))
        inward = np.array([-e[2], 0, e[0]])  # walls run counter-clockwise -> inward normal
        o = a + e * s + [0, y, 0] + inward * 0.015
        pic = mb.begin_object(f"picture_{k}", "picture")
        tex = ["noise", "stripes", "checker"][rng.integers(3)]
        mb.quad_grid(o, e * pw, [0, ph, 0], rng.uniform(0.05, 0.12), _pick(rng, BRIGHTS), pic,
                     mb.random_material(0.15), tex, 0.1, color2=_pick(rng, BRIGHTS))

    # a door and a window on the walls (the window lets in extra light), a rug on the floor
    for what in ("door", "window"):
        side = rng.integers(4)
        a, b = corners[side]
        e = (b - a) / np.linalg.norm(b - a)
        length = np.linalg.norm(b - a)
        inward = np.array([-e[2], 0, e[0]])
        if what == "door":
            dw, dh, y = 0.9, min(2.05, H - 0.2), 0.0
        else:
            dw, dh = rng.uniform(1.0, min(1.8, length - 0.6)), rng.uniform(0.9, min(1.4, H - 1.2))
            y = rng.uniform(0.8, max(0.85, H - dh - 0.25))
        s0 = rng.uniform(0.3, max(0.35, length - dw - 0.3))
        o = a + e * s0 + [0, y, 0] + inward * 0.02
        obj = mb.begin_object(what, what)
        fw = 0.06
        frame = _pick(rng, WOODS + [(0.95, 0.95, 0.95)])
        if what == "door":
            mb.quad_grid(o, e * dw, [0, dh, 0], 0.2, _pick(rng, WOODS), obj, mb.random_material(0.1), "planks")
            k = o + e * (dw - 0.12) + [0, 1.0, 0] + inward * 0.03
            mb.sphere(k, 0.03, [0.7, 0.65, 0.4], obj, resolution=5)
        else:
            mb.quad_grid(o, e * dw, [0, dh, 0], 0.08, _srgb_to_linear((0.75, 0.85, 0.95)), obj, 0, "noise",
                         color2=_srgb_to_linear((0.9, 0.92, 0.95)))
            mid = o + e * dw / 2 + inward * 0.01
            mb.box(mid - e * 0.02 + inward * 0.0, mid + e * 0.02 + inward * 0.03 + [0, dh, 0], frame, obj, cell=0.5)
            lights.append([*(o + e * dw / 2 + [0, dh / 2, 0] + inward * 0.7), rng.uniform(0.8, 1.5)])
        for lo, hi in ((o - e * fw, o + [0, dh, 0] + inward * 0.03),
                       (o + e * dw, o + e * (dw + fw) + [0, dh, 0] + inward * 0.03),
                       (o - e * fw + [0, dh, 0], o + e * (dw + fw) + [0, dh + fw, 0] + inward * 0.03)):
            mb.box(np.minimum(lo, hi), np.maximum(lo, hi), frame, obj, cell=0.5)
        if what == "window":
            lo, hi = o - e * fw - [0, fw, 0], o + e * (dw + fw) + inward * 0.08
            mb.box(np.minimum(lo, hi), np.maximum(lo, hi), frame, obj, cell=0.5)
    if rng.random() < 0.7:
        rw, rd = rng.uniform(1.2, min(3.0, W - 1.0)), rng.uniform(0.8, min(2.0, D - 1.0))
        rx, rz = rng.uniform(0.5, W - rw - 0.5), rng.uniform(0.5, D - rd - 0.5)
        rug = mb.begin_object("rug", "rug")
        col = _pick(rng, FABRICS + BRIGHTS)
        mb.box([rx, 0.0005, rz], [rx + rw, 0.012, rz + rd], col, rug, mb.random_material(0.12),
               ["noise", "stripes", "checker"][rng.integers(3)], cell=rng.uniform(0.1, 0.3), color2=_pick(rng, FABRICS))

    # furniture: rejection-sampled footprints, no overlap, keep free floor
    kinds = _furniture_kinds()
    names = list(kinds)
    placed: list[tuple[float, float, float, float]] = []  # x0, z0, x1, z1
    tables: list[tuple[float, float, float, float, float]] = []  # surfaces for clutter: x0,z0,x1,z1,y
    target_n = rng.integers(cfg.furniture[0], cfg.furniture[1] + 1)
    used_area = 0.0
    furniture = []
    for attempt in range(200):
        if len(furniture) >= target_n:
            break
        kind = names[rng.integers(len(names))]
        (w0, w1), (d0, d1), wall_pref = kinds[kind]
        fw, fd = rng.uniform(w0, w1), rng.uniform(d0, d1)
        if rng.random() < wall_pref:
            side = rng.integers(4)
            if side in (0, 2):  # along z = 0 or z = D walls: footprint w along x
                x0 = rng.uniform(0.05, W - fw - 0.05)
                z0 = 0.02 if side == 0 else D - fd - 0.02
                box = (x0, z0, x0 + fw, z0 + fd)
                facing = np.array([0, 0, 1.0]) if side == 0 else np.array([0, 0, -1.0])
            else:
                z0 = rng.uniform(0.05, D - fw - 0.05)
                x0 = 0.02 if side == 3 else W - fd - 0.02
                box = (x0, z0, x0 + fd, z0 + fw)
                facing = np.array([1.0, 0, 0]) if side == 3 else np.array([-1.0, 0, 0])
        else:
            if rng.random() < 0.5:
                fw, fd = fd, fw
            x0 = rng.uniform(0.6, max(0.61, W - fw - 0.6))
            z0 = rng.uniform(0.6, max(0.61, D - fd - 0.6))
            box = (x0, z0, x0 + fw, z0 + fd)
            facing = np.array([0, 0, 1.0])
        if box[2] > W or box[3] > D or box[0] < 0 or box[1] < 0:
            continue
        if any(not (box[2] + 0.15 < p[0] or p[2] + 0.15 < box[0] or box[3] + 0.15 < p[1] or p[3] + 0.15 < box[1])
               for p in placed):
            continue
        area = (box[2] - box[0]) * (box[3] - box[1])
        if used_area + area > (1 - cfg.min_free_fraction) * W * D * 0.6:
            continue
        placed.append(box)
        used_area += area
        furniture.append((kind, box, facing))
        _build_furniture(mb, rng, kind, box, facing, H, tables, len(furniture) - 1)

    # clutter on tables/shelves and on the floor
    nclutter = 0
    for (x0, z0, x1, z1, y) in tables:
        for _ in range(rng.integers(1, 5)):
            _clutter(mb, rng, x0, z0, x1, z1, y, nclutter)
            nclutter += 1
    for _ in range(rng.integers(cfg.floor_clutter[0], cfg.floor_clutter[1] + 1)):
        for _try in range(20):
            x, z = rng.uniform(0.2, W - 0.2), rng.uniform(0.2, D - 0.2)
            near_wall = min(x, z, W - x, D - z) < 0.8
            if near_wall and not any(p[0] - 0.2 < x < p[2] + 0.2 and p[1] - 0.2 < z < p[3] + 0.2 for p in placed):
                _clutter(mb, rng, x - 0.15, z - 0.15, x + 0.15, z + 0.15, 0.0, nclutter, big=True)
                placed.append((x - 0.2, z - 0.2, x + 0.2, z + 0.2))
                nclutter += 1
                break

    desc = {"kind": "procedural_room", "size_m": [round(W, 3), round(H, 3), round(D, 3)],
            "furniture": [k for k, _, _ in furniture], "clutter": nclutter, "floor": ftex,
            "lights": len(lights)}
    warm = rng.uniform(-1.0, 1.0)  # -1 cool daylight ... +1 warm tungsten
    tint = np.array([1.0, 1.0, 1.0]) + warm * np.array([0.06, -0.01, -0.12])
    return mb.build(0.0, np.asarray(lights), desc, light_tint=tint / tint.max())


def _build_furniture(mb: MeshBuilder, rng, kind: str, box, facing, H: float, tables: list, idx: int) -> None:
    x0, z0, x1, z1 = box
    obj = mb.begin_object(f"{kind}_{idx}", kind)
    wood = _pick(rng, WOODS)
    mat = mb.random_material(0.12)
    if kind == "table":
        h = rng.uniform(0.7, 0.78)
        t = 0.04
        mb.box([x0, h - t, z0], [x1, h, z1], wood, obj, mat, "planks" if rng.random() < 0.5 else "plain", cell=0.12)
        lw = 0.05
        for (lx, lz) in [(x0, z0), (x1 - lw, z0), (x0, z1 - lw), (x1 - lw, z1 - lw)]:
            mb.box([lx, 0, lz], [lx + lw, h - t, lz + lw], wood * 0.8, obj, 0, cell=0.4)
        tables.append((x0 + 0.05, z0 + 0.05, x1 - 0.05, z1 - 0.05, h))
    elif kind == "shelf":
        h = rng.uniform(1.4, 2.1)
        n = int(rng.integers(3, 6))
        th = 0.025
        # sides and back
        along_x = (x1 - x0) >= (z1 - z0)
        if along_x:
            mb.box([x0, 0, z0], [x0 + th, h, z1], wood, obj, mat, cell=0.3)
            mb.box([x1 - th, 0, z0], [x1, h, z1], wood, obj, mat, cell=0.3)
            back = [x0, 0, z0 if facing[2] > 0 else z1 - th], [x1, h, (z0 + th) if facing[2] > 0 else z1]
        else:
            mb.box([x0, 0, z0], [x1, h, z0 + th], wood, obj, mat, cell=0.3)
            mb.box([x0, 0, z1 - th], [x1, h, z1], wood, obj, mat, cell=0.3)
            back = [x0 if facing[0] > 0 else x1 - th, 0, z0], [(x0 + th) if facing[0] > 0 else x1, h, z1]
        mb.box(back[0], back[1], wood * 0.7, obj, 0, cell=0.3)
        for k in range(n + 1):
            y = k * (h - th) / n
            mb.box([x0, y, z0], [x1, y + th, z1], wood, obj, mat, cell=0.3)
            if k < n:  # books
                gap = (h - th) / n - th
                pos = 0.0
                length = (x1 - x0) if along_x else (z1 - z0)
                while pos < length - 0.1 and rng.random() < 0.93:
                    bw = rng.uniform(0.02, 0.06)
                    bh = gap * rng.uniform(0.55, 0.9)
                    bd = ((z1 - z0) if along_x else (x1 - x0)) * rng.uniform(0.6, 0.9)
                    col = _pick(rng, BRIGHTS + FABRICS)
                    if along_x:
                        zc = z0 + th if facing[2] > 0 else z1 - th - bd
                        lo, hi = [x0 + th + pos, y + th, zc], [x0 + th + pos + bw, y + th + bh, zc + bd]
                    else:
                        xc = x0 + th if facing[0] > 0 else x1 - th - bd
                        lo, hi = [xc, y + th, z0 + th + pos], [xc + bd, y + th + bh, z0 + th + pos + bw]
                    mb.box(lo, hi, col, obj, 0, cell=0.5, jitter=0.1)
                    pos += bw + (rng.uniform(0.1, 0.3) if rng.random() < 0.08 else 0.002)
    elif kind == "cabinet":
        h = rng.uniform(0.7, 1.2)
        col = _pick(rng, WOODS + WALL_PAINTS)
        mb.box([x0, 0, z0], [x1, h, z1], col, obj, mat, "stripes" if rng.random() < 0.5 else "plain", cell=0.2,
               color2=col * 0.75)
        tables.append((x0 + 0.05, z0 + 0.05, x1 - 0.05, z1 - 0.05, h))
    elif kind == "sofa":
        fab = _pick(rng, FABRICS)
        fmat = mb.random_material(0.1)
        mb.box([x0, 0, z0], [x1, 0.42, z1], fab, obj, fmat, "noise", cell=0.15)
        if abs(facing[2]) > 0:
            zb = (z0, z0 + 0.2) if facing[2] > 0 else (z1 - 0.2, z1)
            mb.box([x0, 0.42, zb[0]], [x1, 0.85, zb[1]], fab * 0.9, obj, fmat, "noise", cell=0.15)
            mb.box([x0, 0.42, z0], [x0 + 0.18, 0.62, z1], fab * 0.95, obj, fmat, cell=0.2)
            mb.box([x1 - 0.18, 0.42, z0], [x1, 0.62, z1], fab * 0.95, obj, fmat, cell=0.2)
        else:
            xb = (x0, x0 + 0.2) if facing[0] > 0 else (x1 - 0.2, x1)
            mb.box([xb[0], 0.42, z0], [xb[1], 0.85, z1], fab * 0.9, obj, fmat, "noise", cell=0.15)
            mb.box([x0, 0.42, z0], [x1, 0.62, z0 + 0.18], fab * 0.95, obj, fmat, cell=0.2)
            mb.box([x0, 0.42, z1 - 0.18], [x1, 0.62, z1], fab * 0.95, obj, fmat, cell=0.2)
    elif kind == "bed":
        mb.box([x0, 0, z0], [x1, 0.3, z1], wood, obj, mat, cell=0.3)
        sheet = _pick(rng, FABRICS + WALL_PAINTS)
        mb.box([x0 + 0.02, 0.3, z0 + 0.02], [x1 - 0.02, 0.5, z1 - 0.02], sheet, obj, 0,
               "checker" if rng.random() < 0.4 else "noise", cell=0.2, color2=sheet * 0.6)
        tables.append((x0 + 0.2, z0 + 0.2, x1 - 0.2, z1 - 0.2, 0.5))
    elif kind == "chair":
        h = 0.45
        col = _pick(rng, WOODS + FABRICS)
        mb.box([x0, h - 0.04, z0], [x1, h, z1], col, obj, mat, cell=0.2)
        lw = 0.04
        for (lx, lz) in [(x0, z0), (x1 - lw, z0), (x0, z1 - lw), (x1 - lw, z1 - lw)]:
            mb.box([lx, 0, lz], [lx + lw, h - 0.04, lz + lw], col * 0.7, obj, 0, cell=0.5)
        mb.box([x0, h, z1 - 0.04], [x1, h + 0.45, z1], col, obj, mat, cell=0.2)
    elif kind == "plant":
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        r = (x1 - x0) / 2
        mb.cylinder([cx, 0, cz], r * 0.7, 0.35, _pick(rng, [(0.7, 0.35, 0.2), (0.9, 0.9, 0.88), (0.2, 0.2, 0.22)]), obj)
        green = _srgb_to_linear((0.2, 0.5, 0.2)) * rng.uniform(0.6, 1.2)
        for _ in range(rng.integers(3, 7)):
            mb.sphere([cx + rng.uniform(-r, r) * 0.6, 0.35 + rng.uniform(0.15, 0.7), cz + rng.uniform(-r, r) * 0.6],
                      rng.uniform(0.1, 0.22), green, obj, resolution=6)
    elif kind == "lamp":
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        h = rng.uniform(1.3, 1.7)
        mb.cylinder([cx, 0, cz], 0.15, 0.03, [0.1, 0.1, 0.1], obj)
        mb.cylinder([cx, 0.03, cz], 0.015, h - 0.03, [0.15, 0.15, 0.15], obj, resolution=8)
        mb.cylinder([cx, h - 0.1, cz], 0.17, 0.25, _pick(rng, WALL_PAINTS + BRIGHTS), obj)


def _clutter(mb: MeshBuilder, rng, x0, z0, x1, z1, y, idx: int, big: bool = False) -> None:
    if x1 - x0 < 0.1 or z1 - z0 < 0.1:
        return
    obj = mb.begin_object(f"item_{idx}", "clutter")
    col = _pick(rng, BRIGHTS + FABRICS + WOODS)
    s = 2.0 if big else 1.0
    kind = rng.integers(4)
    cx, cz = rng.uniform(x0 + 0.05, x1 - 0.05), rng.uniform(z0 + 0.05, z1 - 0.05)
    if kind == 0:  # box (a book, a parcel)
        w, d, h = rng.uniform(0.06, 0.25, size=3) * s
        tex = ["plain", "stripes", "checker", "noise"][rng.integers(4)]
        mb.box([cx - w / 2, y, cz - d / 2], [cx + w / 2, y + h, cz + d / 2], col, obj, mb.random_material(0.15), tex,
               cell=0.04, color2=_pick(rng, BRIGHTS))
    elif kind == 1:  # ball / fruit
        r = rng.uniform(0.04, 0.12) * s
        mb.sphere([cx, y + r, cz], r, col, obj, resolution=8)
    elif kind == 2:  # mug / bottle / bin
        r, h = rng.uniform(0.03, 0.08) * s, rng.uniform(0.08, 0.3) * s
        mb.cylinder([cx, y, cz], r, h, col, obj, mb.random_material(0.15), resolution=12)
    else:  # a stack of boxes
        h = y
        for _ in range(rng.integers(2, 4)):
            w, d, hh = rng.uniform(0.08, 0.2, size=3) * s
            mb.box([cx - w / 2, h, cz - d / 2], [cx + w / 2, h + hh, cz + d / 2], _pick(rng, BRIGHTS + WOODS), obj,
                   0, "plain", cell=0.05)
            h += hh
