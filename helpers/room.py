"""A random furnished bedroom as triangles, each with its mask value and material: the scene the generator renders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from helpers.labels import LabelTable

# Axes: x along the room's width, z along its depth, y up; metres. Furniture is modelled facing +z.
# Pattern kinds of a material: a smooth noise, stripes (planks, wood grain), a checker (tiles).
PLAIN, NOISE, STRIPES, CHECKER = 0, 1, 2, 3


@dataclass
class Scene:
    """Triangles with a mask value and a material per face, plus the lights."""

    triangles: list[np.ndarray] = field(default_factory=list)  # (n, 3, 3) each
    face_class: list[np.ndarray] = field(default_factory=list)
    face_material: list[np.ndarray] = field(default_factory=list)
    materials: list[np.ndarray] = field(default_factory=list)  # rows of MATERIAL_FIELDS
    lights: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (position, intensity)
    size: tuple[float, float, float] = (4.0, 2.7, 4.0)  # width (x), height (y), depth (z)
    footprints: list[tuple[float, float, float, float]] = field(default_factory=list)  # floor AABBs x0,x1,z0,z1

    def add(self, mesh: trimesh.Trimesh, value: int, material: np.ndarray) -> None:
        """Add a mesh whose every face has this mask value and material."""
        self.triangles.append(np.asarray(mesh.triangles, dtype=np.float32))
        n = len(mesh.faces)
        self.face_class.append(np.full(n, value, dtype=np.uint8))
        self.face_material.append(np.full(n, len(self.materials), dtype=np.int32))
        self.materials.append(material)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All triangles, the mask value and material of each face, and the material table."""
        return (
            np.concatenate(self.triangles),
            np.concatenate(self.face_class),
            np.concatenate(self.face_material),
            np.stack(self.materials).astype(np.float32),
        )


# Colour families, so each kind of surface looks like what it is in real rooms (still varied per room). Most real
# bedrooms have white or off-white walls and ceilings, then beige and greige, then a colour; bedding is mostly light.
WHITES = [(0.92, 0.91, 0.88), (0.88, 0.88, 0.88), (0.9, 0.87, 0.8), (0.85, 0.86, 0.88)]
BEIGES = [(0.85, 0.78, 0.66), (0.78, 0.74, 0.68), (0.72, 0.7, 0.66), (0.8, 0.72, 0.6)]
COLOURS = [
    (0.6, 0.72, 0.8),
    (0.68, 0.8, 0.66),
    (0.88, 0.7, 0.62),
    (0.5, 0.55, 0.62),
    (0.82, 0.8, 0.55),
    (0.7, 0.6, 0.75),
]
PAINTS = [WHITES] * 5 + [BEIGES] * 3 + [COLOURS] * 2  # a family drawn uniformly from this list, then a colour
FABRICS = [(0.9, 0.9, 0.88), (0.75, 0.7, 0.6), (0.3, 0.4, 0.6), (0.5, 0.5, 0.52), (0.6, 0.25, 0.2), (0.3, 0.5, 0.35)]
WOODS = [(0.45, 0.28, 0.15), (0.7, 0.55, 0.35), (0.25, 0.15, 0.1), (0.85, 0.85, 0.85), (0.2, 0.2, 0.22)]
CARPETS = [(0.6, 0.58, 0.55), (0.45, 0.42, 0.4), (0.7, 0.65, 0.55), (0.35, 0.35, 0.4)]
TILES = [(0.85, 0.85, 0.82), (0.6, 0.6, 0.6), (0.7, 0.62, 0.5), (0.3, 0.3, 0.32)]

# How often each labelled class is in a room: real bedrooms almost always show a bed and walls, the rest only
# sometimes, and a model trained on rooms that hold every class learns to find every class everywhere.
PRESENCE = {
    "building_door": 0.8,
    "furniture_doubleBed": 0.9,
    "furniture_armchair": 0.35,
    "furniture_nightTable": 0.65,
    "furniture_tvStand": 0.3,
    "furniture_commode": 0.4,
    "furniture_drawer": 0.35,
    "furniture_shelf": 0.35,
    "furniture_floor_lamp": 0.3,
    "furniture_rug": 0.5,
    "furniture_painting": 0.7,
    "furniture_clock": 0.25,
    "items_tv": 0.6,
    "items_nightLamp": 0.7,
    "items_vase": 0.35,
    "items_bowl": 0.25,
    "items_mug": 0.3,
    "items_plate": 0.2,
    "items_phone": 0.25,
    "live_dog": 0.15,
}


def pick(rng: np.random.Generator, family: list) -> tuple[float, float, float]:
    """One colour of a family (or of a family drawn from a list of families)."""
    choice = family[int(rng.integers(len(family)))]
    return pick(rng, choice) if isinstance(choice, list) else choice


def present(rng: np.random.Generator, name: str) -> bool:
    """Whether this room gets the class, drawn with its PRESENCE probability."""
    return bool(rng.random() < PRESENCE.get(name, 1.0))


# A material row: base RGB (linear), second RGB (mixed in by the pattern), pattern kind, pattern frequency,
# pattern axis (xyz), glow (0: lit by the lights; above 0: emits its colour times glow, like a window or a lampshade).
MATERIAL_FIELDS = 12


def material(
    rng: np.random.Generator,
    base: tuple[float, float, float] | None = None,
    kind: int | None = None,
    freq: float | None = None,
    spread: float = 0.25,
    glow: float = 0.0,
) -> np.ndarray:
    """A random material around `base` with a procedural pattern."""
    base_rgb = np.array(base if base is not None else rng.uniform(0.1, 0.9, 3))
    base_rgb = np.clip(base_rgb * rng.uniform(1 - spread, 1 + spread, 3), 0.02, 0.98)
    second = np.clip(base_rgb * rng.uniform(0.5, 1.3), 0.0, 1.0)
    kind = int(rng.integers(0, 4)) if kind is None else kind
    freq = float(rng.uniform(2, 12)) if freq is None else freq
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return np.array([*base_rgb, *second, kind, freq, *axis, glow], dtype=np.float32)


# trimesh builds cylinders and cones along z; ours stand upright along y
Z_TO_Y = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])


def _yaw(angle: float) -> np.ndarray:
    return trimesh.transformations.rotation_matrix(angle, [0, 1, 0])


def _at(x: float, y: float, z: float, yaw: float = 0.0) -> np.ndarray:
    m = _yaw(yaw)
    m[:3, 3] = (x, y, z)
    return m


def box(size: tuple[float, float, float], center: tuple[float, float, float]) -> trimesh.Trimesh:
    """An axis-aligned box in local coordinates."""
    return trimesh.creation.box(extents=size, transform=trimesh.transformations.translation_matrix(center))


def cylinder(radius: float, height: float, base: tuple[float, float, float], sections: int = 16) -> trimesh.Trimesh:
    """An upright cylinder standing on `base`."""
    m = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    m.apply_transform(Z_TO_Y)
    m.apply_translation((base[0], base[1] + height / 2, base[2]))
    return m


def cone(radius: float, height: float, base: tuple[float, float, float]) -> trimesh.Trimesh:
    """An upright cone standing on `base`."""
    m = trimesh.creation.cone(radius=radius, height=height, sections=16)
    m.apply_transform(Z_TO_Y)
    m.apply_translation(base)
    return m


def ellipsoid(radii: tuple[float, float, float], center: tuple[float, float, float]) -> trimesh.Trimesh:
    """An ellipsoid from a scaled icosphere."""
    m = trimesh.creation.icosphere(subdivisions=2)
    m.apply_scale(radii)
    m.apply_translation(center)
    return m


def _merge(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    return trimesh.util.concatenate(parts)


# Furniture models, built facing +z with the back at z = -depth/2 and the floor at y = 0.
# Each returns (mesh, width, depth, top height or None when nothing can stand on it); the bed returns its frame and
# its bedding apart, so they get different materials.
def model_bed(rng: np.random.Generator) -> tuple[trimesh.Trimesh, trimesh.Trimesh, float, float]:
    """A single or double bed: (frame with headboard, bedding: duvet and pillows, width, depth)."""
    w, d = rng.uniform(0.9, 1.9), rng.uniform(1.9, 2.15)
    h = rng.uniform(0.35, 0.55)
    frame = [box((w, h, d), (0, h / 2, 0))]
    if rng.random() < 0.85:
        frame.append(box((w + 0.04, rng.uniform(0.8, 1.3), 0.08), (0, 0.5, -d / 2 + 0.04)))
    hang = rng.uniform(0.1, h - 0.08)  # the duvet hangs over the sides
    bedding = [box((w + 0.06, hang + 0.08, d * rng.uniform(0.6, 0.85)), (0, h + 0.04 - hang / 2, d * 0.12))]
    n_pillows = 1 if w < 1.2 else 2
    for k in range(n_pillows):
        x = 0 if n_pillows == 1 else (-1 if k == 0 else 1) * w * 0.23
        bedding.append(ellipsoid((min(0.32, w * 0.22), 0.08, 0.2), (x, h + 0.09, -d / 2 + 0.3)))
    return _merge(frame), _merge(bedding), w, d


def model_armchair(rng: np.random.Generator) -> tuple[trimesh.Trimesh, float, float, float | None]:
    w, d = rng.uniform(0.7, 0.9), rng.uniform(0.7, 0.9)
    seat = rng.uniform(0.38, 0.45)
    parts = [
        box((w, seat, d), (0, seat / 2, 0)),
        box((w, 0.5, 0.18), (0, seat + 0.25, -d / 2 + 0.09)),
        box((0.15, 0.22, d), (-w / 2 + 0.075, seat + 0.11, 0)),
        box((0.15, 0.22, d), (w / 2 - 0.075, seat + 0.11, 0)),
    ]
    return _merge(parts), w, d, None


def model_cabinet(rng: np.random.Generator, w: float, d: float, h: float, fronts: int) -> trimesh.Trimesh:
    """A box with drawer fronts and knobs: night tables, commodes, drawers, TV stands."""
    parts = [box((w, h - 0.06, d), (0, (h - 0.06) / 2 + 0.06, 0)), box((w * 0.95, 0.06, d * 0.9), (0, 0.03, 0))]
    step = (h - 0.1) / fronts
    for i in range(fronts):
        y = 0.08 + step * (i + 0.5)
        parts.append(box((w * 0.9, step * 0.85, 0.015), (0, y, d / 2 + 0.007)))
        parts.append(box((0.06, 0.02, 0.025), (0, y, d / 2 + 0.02)))
    return _merge(parts)


def model_shelf(rng: np.random.Generator) -> tuple[trimesh.Trimesh, float, float, float | None]:
    w, d, h = rng.uniform(0.7, 1.0), rng.uniform(0.3, 0.4), rng.uniform(1.6, 2.0)
    parts = [
        box((0.03, h, d), (-w / 2 + 0.015, h / 2, 0)),
        box((0.03, h, d), (w / 2 - 0.015, h / 2, 0)),
        box((w, h, 0.02), (0, h / 2, -d / 2 + 0.01)),
    ]
    for y in np.linspace(0.05, h - 0.02, 5):
        parts.append(box((w, 0.03, d), (0, y, 0)))
    return _merge(parts), w, d, h


def model_floor_lamp(rng: np.random.Generator) -> tuple[trimesh.Trimesh, float, float, float | None]:
    h = rng.uniform(1.4, 1.8)
    parts = [
        cylinder(0.15, 0.03, (0, 0, 0)),
        cylinder(0.015, h, (0, 0, 0)),
        cylinder(rng.uniform(0.15, 0.22), 0.28, (0, h - 0.05, 0), sections=12),
    ]
    return _merge(parts), 0.4, 0.4, None


def model_dog(rng: np.random.Generator) -> trimesh.Trimesh:
    """A dog standing facing +z: body, head, snout, ears, legs and tail."""
    s = rng.uniform(0.7, 1.3)
    leg = 0.3 * s
    body_h = leg + 0.12 * s
    parts = [
        ellipsoid((0.14 * s, 0.14 * s, 0.32 * s), (0, body_h, 0)),
        ellipsoid((0.1 * s, 0.1 * s, 0.11 * s), (0, body_h + 0.15 * s, 0.33 * s)),
        ellipsoid((0.05 * s, 0.05 * s, 0.08 * s), (0, body_h + 0.12 * s, 0.44 * s)),
        ellipsoid((0.03 * s, 0.07 * s, 0.02 * s), (-0.07 * s, body_h + 0.25 * s, 0.3 * s)),
        ellipsoid((0.03 * s, 0.07 * s, 0.02 * s), (0.07 * s, body_h + 0.25 * s, 0.3 * s)),
        ellipsoid((0.025 * s, 0.025 * s, 0.14 * s), (0, body_h + 0.08 * s, -0.38 * s)),
    ]
    for x in (-0.08 * s, 0.08 * s):
        for z in (-0.2 * s, 0.2 * s):
            parts.append(cylinder(0.035 * s, leg + 0.05 * s, (x, 0, z), sections=8))
    return _merge(parts)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float], gap: float = 0.05) -> bool:
    return a[0] < b[1] + gap and b[0] < a[1] + gap and a[2] < b[3] + gap and b[2] < a[3] + gap


class RoomBuilder:
    """Places a room's parts one by one, keeping the free floor and wall space."""

    def __init__(self, rng: np.random.Generator, labels: LabelTable):
        self.rng = rng
        self.value = {name: i for i, name in enumerate(labels.codes)}
        self.scene = Scene()
        self.W, self.H, self.D = rng.uniform(3.2, 6.0), rng.uniform(2.5, 3.1), rng.uniform(3.2, 6.0)
        self.scene.size = (self.W, self.H, self.D)
        self.surfaces: list[tuple[float, float, float, float, float]] = []  # x0,x1,z0,z1,top y
        self.wall_spans: list[tuple[int, float, float, float, float]] = []  # wall, s0, s1, y0, y1

    def add(self, mesh: trimesh.Trimesh, name: str, mat: np.ndarray) -> None:
        """Add a mesh under a class name from labels.csv (`void` for unlabelled clutter)."""
        self.scene.add(mesh, self.value[name], mat)

    # --- walls: 0 is z=0 (faces +z), 1 is x=W (faces -x), 2 is z=D (faces -z), 3 is x=0 (faces +x)
    def wall_length(self, wall: int) -> float:
        return self.W if wall % 2 == 0 else self.D

    def wall_pose(self, wall: int, s: float, offset: float) -> tuple[float, float, float]:
        """Position (x, z) at distance s along a wall and `offset` into the room, and the yaw facing inwards."""
        if wall == 0:
            return s, offset, 0.0
        if wall == 1:
            return self.W - offset, s, -np.pi / 2
        if wall == 2:
            return self.W - s, self.D - offset, np.pi
        return offset, self.D - s, np.pi / 2

    def footprint(
        self, wall: int, s: float, w: float, d: float, offset: float = 0.0
    ) -> tuple[float, float, float, float]:
        """Floor AABB of a w x d piece with its back on a wall, centred at s."""
        x, z, _ = self.wall_pose(wall, s, offset + d / 2)
        hw, hd = (w / 2, d / 2) if wall % 2 == 0 else (d / 2, w / 2)
        return x - hw, x + hw, z - hd, z + hd

    def shell(self) -> None:
        """Walls, floor, ceiling, perhaps a door, windows with daylight and curtains, a skirting and a ceiling light."""
        rng, W, H, D = self.rng, self.W, self.H, self.D
        paint = pick(rng, PAINTS)
        wall_mat = material(
            rng, paint, kind=int(rng.choice([PLAIN, PLAIN, NOISE, STRIPES])), freq=rng.uniform(1, 6), spread=0.08
        )
        accent = int(rng.integers(4)) if rng.random() < 0.2 else -1  # one wall in another paint
        accent_mat = material(rng, pick(rng, COLOURS + BEIGES), kind=PLAIN, spread=0.15)
        for wall, (size, centre) in enumerate(
            [
                ((W, H, 0.1), (W / 2, H / 2, -0.05)),
                ((0.1, H, D), (W + 0.05, H / 2, D / 2)),
                ((W, H, 0.1), (W / 2, H / 2, D + 0.05)),
                ((0.1, H, D), (-0.05, H / 2, D / 2)),
            ]
        ):
            self.add(box(size, centre), "building_wall", accent_mat if wall == accent else wall_mat)
        kind = rng.choice(["wood", "wood", "carpet", "tiles"])
        floor_mat = {
            "wood": lambda: material(rng, pick(rng, WOODS), kind=STRIPES, freq=rng.uniform(6, 20), spread=0.15),
            "carpet": lambda: material(rng, pick(rng, CARPETS), kind=NOISE, freq=rng.uniform(10, 40), spread=0.2),
            "tiles": lambda: material(rng, pick(rng, TILES), kind=CHECKER, freq=rng.uniform(2, 6), spread=0.1),
        }[kind]()
        self.add(box((W, 0.1, D), (W / 2, -0.05, D / 2)), "building_floor", floor_mat)
        self.add(
            box((W, 0.1, D), (W / 2, H + 0.05, D / 2)),
            "building_ceiling",
            material(rng, pick(rng, WHITES), kind=PLAIN, spread=0.05),
        )
        if rng.random() < 0.8:  # unlabelled clutter: in Unity anything without a label is 0
            skirting = material(rng, pick(rng, [WHITES, WOODS]), kind=PLAIN, spread=0.1)
            for wall in range(4):
                L = self.wall_length(wall)
                x, z, yaw = self.wall_pose(wall, L / 2, 0.01)
                self.add(box((L, 0.08, 0.02), (0, 0.04, 0)).apply_transform(_at(x, 0, z, yaw)), "void", skirting)
        if present(rng, "building_door"):
            door_wall = int(rng.integers(4))
            s = rng.uniform(0.6, self.wall_length(door_wall) - 0.6)
            x, z, yaw = self.wall_pose(door_wall, s, 0.0)
            door = _merge([box((0.9, 2.05, 0.04), (0, 1.025, 0.02)), box((0.12, 0.03, 0.05), (0.33, 1.0, 0.06))])
            self.add(
                door.apply_transform(_at(x, 0, z, yaw)),
                "building_door",
                material(rng, pick(rng, [WHITES, WOODS]), kind=int(rng.choice([PLAIN, STRIPES])), freq=4, spread=0.1),
            )
            self.scene.footprints.append(self.footprint(door_wall, s, 1.0, 0.9))
            self.wall_spans.append((door_wall, s - 0.5, s + 0.5, 0.0, 2.1))
        for _ in range(int(rng.choice([0, 1, 1, 2]))):
            self.window()
        if rng.random() < 0.7:
            lamp = cylinder(rng.uniform(0.12, 0.3), 0.08, (W / 2, H - 0.08, D / 2), sections=16)
            self.add(
                lamp, "void", material(rng, (0.95, 0.93, 0.85), kind=PLAIN, spread=0.05, glow=rng.uniform(1.0, 2.5))
            )

    def window(self) -> None:
        """A window showing daylight (sky and greenery), its frame, perhaps curtains, and the light it lets in."""
        rng = self.rng
        wall = int(rng.integers(4))
        w, h = rng.uniform(0.7, 2.0), rng.uniform(1.0, min(1.7, self.H - 0.9))
        L = self.wall_length(wall)
        if L < w + 0.6:
            return
        s, y0 = rng.uniform(w / 2 + 0.2, L - w / 2 - 0.2), rng.uniform(0.5, self.H - h - 0.15)
        if not self._wall_free(wall, s - w / 2, s + w / 2, y0, y0 + h):
            return
        x, z, yaw = self.wall_pose(wall, s, 0.0)
        place = _at(x, 0, z, yaw)
        sky = material(
            rng, (0.75, 0.85, 0.95), kind=NOISE, freq=rng.uniform(1, 4), spread=0.15, glow=rng.uniform(1.5, 4.0)
        )
        sky[3:6] = rng.uniform([0.25, 0.35, 0.15], [0.5, 0.6, 0.35])  # trees and buildings outside
        self.add(box((w, h, 0.01), (0, y0 + h / 2, 0.005)).apply_transform(place), "void", sky)
        t = 0.05
        bars = [
            box((w + 2 * t, t, 0.06), (0, y0 - t / 2, 0.03)),
            box((w + 2 * t, t, 0.06), (0, y0 + h + t / 2, 0.03)),
            box((t, h, 0.06), (-w / 2 - t / 2, y0 + h / 2, 0.03)),
            box((t, h, 0.06), (w / 2 + t / 2, y0 + h / 2, 0.03)),
            box((t * 0.6, h, 0.04), (0, y0 + h / 2, 0.02)),
        ]
        self.add(
            _merge(bars).apply_transform(place),
            "void",
            material(rng, pick(rng, [WHITES, WOODS]), kind=PLAIN, spread=0.1),
        )
        self.wall_spans.append((wall, s - w / 2 - t, s + w / 2 + t, 0.0 if rng.random() < 0.3 else y0 - t, y0 + h + t))
        if rng.random() < 0.6:  # curtains hanging beside it, from near the ceiling
            cloth = material(
                rng, pick(rng, [WHITES, FABRICS, BEIGES]), kind=STRIPES, freq=rng.uniform(15, 35), spread=0.2
            )
            cloth[8:11] = (1, 0, 0) if wall % 2 == 0 else (0, 0, 1)  # vertical folds
            bottom = 0.02 if rng.random() < 0.6 else y0 - 0.1
            for side in (-1, 1):
                cw = rng.uniform(0.25, 0.55)
                curtain = box(
                    (cw, self.H - 0.1 - bottom, 0.05),
                    (side * (w / 2 + cw / 2 - 0.1), (self.H - 0.1 + bottom) / 2, 0.12),
                )
                self.add(curtain.apply_transform(place), "void", cloth)
        lx, lz, _ = self.wall_pose(wall, s, 0.4)
        self.scene.lights.append((np.array([lx, y0 + h * 0.7, lz]), float(rng.uniform(0.8, 2.0))))

    def _wall_free(self, wall: int, s0: float, s1: float, y0: float, y1: float) -> bool:
        return all(
            not (w == wall and s0 < b1 and a0 < s1 and y0 < c1 and c0 < y1) for w, a0, b1, c0, c1 in self.wall_spans
        )

    def against_wall(
        self,
        parts: list[tuple[trimesh.Trimesh, np.ndarray]],
        name: str,
        w: float,
        d: float,
        h: float,
        top: float | None,
        tries: int = 60,
    ) -> bool:
        """Place a piece (meshes with their materials) with its back to a random wall where the floor is free.

        Returns False, placing nothing, when no free spot was found in `tries` draws."""
        for _ in range(tries):
            wall = int(self.rng.integers(4))
            L = self.wall_length(wall)
            if L < w + 0.1:
                continue
            s = self.rng.uniform(w / 2 + 0.05, L - w / 2 - 0.05)
            fp = self.footprint(wall, s, w, d, 0.02)
            if any(_overlaps(fp, other) for other in self.scene.footprints):
                continue
            x, z, yaw = self.wall_pose(wall, s, 0.02 + d / 2)
            for mesh, mat in parts:
                self.add(mesh.apply_transform(_at(x, 0, z, yaw)), name, mat)
            self.scene.footprints.append(fp)
            self.wall_spans.append((wall, s - w / 2, s + w / 2, 0.0, h))
            if top is not None:
                self.surfaces.append((fp[0] + 0.05, fp[1] - 0.05, fp[2] + 0.05, fp[3] - 0.05, top))
            return True
        return False

    def furniture(self) -> None:
        """Furniture on the floor, each class with its PRESENCE probability, backs to the walls, never overlapping.

        The bed is placed first, so it finds room; a piece with no free wall space left is skipped."""
        rng = self.rng

        def wood() -> np.ndarray:
            return material(rng, pick(rng, WOODS), kind=STRIPES, freq=rng.uniform(8, 30), spread=0.15)

        if present(rng, "furniture_doubleBed"):
            frame, bedding, w, d = model_bed(rng)
            frame_mat = material(rng, pick(rng, [WOODS, FABRICS]), kind=int(rng.choice([PLAIN, STRIPES])), spread=0.15)
            bedding_mat = material(
                rng,
                pick(rng, [WHITES, WHITES, FABRICS, BEIGES]),
                kind=int(rng.choice([PLAIN, NOISE])),
                freq=rng.uniform(5, 20),
                spread=0.1,
            )
            self.against_wall([(frame, frame_mat), (bedding, bedding_mat)], "furniture_doubleBed", w, d, 1.2, None)
        if present(rng, "furniture_armchair"):
            mesh, w, d, top = model_armchair(rng)
            self.against_wall(
                [(mesh, material(rng, pick(rng, FABRICS), kind=NOISE, spread=0.2))],
                "furniture_armchair",
                w,
                d,
                0.9,
                top,
            )
        for name, (wr, dr, hr, fronts) in {
            "furniture_nightTable": ((0.4, 0.55), (0.35, 0.45), (0.45, 0.65), 2),
            "furniture_tvStand": ((1.1, 1.6), (0.35, 0.5), (0.4, 0.6), 1),
            "furniture_commode": ((0.8, 1.2), (0.4, 0.55), (0.75, 1.0), 3),
            "furniture_drawer": ((0.6, 0.9), (0.4, 0.5), (1.0, 1.3), 5),
        }.items():
            if present(rng, name):
                w, d, h = rng.uniform(*wr), rng.uniform(*dr), rng.uniform(*hr)
                self.against_wall([(model_cabinet(rng, w, d, h, fronts), wood())], name, w, d, h, h)
        if present(rng, "furniture_shelf"):
            mesh, w, d, top = model_shelf(rng)
            self.against_wall([(mesh, wood())], "furniture_shelf", w, d, top or 2.0, top)
        if present(rng, "furniture_floor_lamp"):
            mesh, w, d, top = model_floor_lamp(rng)
            self.against_wall(
                [(mesh, material(rng, (0.8, 0.75, 0.6), kind=PLAIN, glow=float(rng.choice([0, 1.2]))))],
                "furniture_floor_lamp",
                w,
                d,
                1.8,
                top,
            )
        # unlabelled furniture: a desk, a wardrobe (tables and chairs are not classes)
        for _ in range(int(rng.integers(0, 3))):
            w, d, h = rng.uniform(0.6, 1.6), rng.uniform(0.4, 0.7), rng.uniform(0.7, 2.1)
            self.against_wall([(box((w, h, d), (0, h / 2, 0)), wood())], "void", w, d, h, h if h < 1.0 else None)
        # the rug lies flat in the open floor; furniture may stand on its edge, as in real rooms
        if present(rng, "furniture_rug"):
            rw, rd = rng.uniform(1.2, 2.2), rng.uniform(0.8, 1.6)
            cx = rng.uniform(rw / 2 + 0.3, max(rw / 2 + 0.31, self.W - rw / 2 - 0.3))
            cz = rng.uniform(rd / 2 + 0.3, max(rd / 2 + 0.31, self.D - rd / 2 - 0.3))
            rug = box((rw, 0.012, rd), (0, 0.006, 0)).apply_transform(_at(cx, 0, cz, rng.uniform(-0.3, 0.3)))
            self.add(
                rug,
                "furniture_rug",
                material(rng, kind=int(rng.choice([STRIPES, CHECKER, NOISE])), freq=rng.uniform(3, 12), spread=0.6),
            )

    def wall_decor(self) -> None:
        """Paintings and a clock hung on free wall space, when the room has them."""
        rng = self.rng
        paintings = int(rng.integers(1, 4)) if present(rng, "furniture_painting") else 0
        for name in ["furniture_painting"] * paintings + ["furniture_clock"] * present(rng, "furniture_clock"):
            for _ in range(40):
                wall = int(rng.integers(4))
                clock = name == "furniture_clock"
                w, h = (rng.uniform(0.3, 0.5),) * 2 if clock else (rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.9))
                L = self.wall_length(wall)
                if L < w + 0.2:
                    continue
                s, y = rng.uniform(w / 2 + 0.1, L - w / 2 - 0.1), rng.uniform(1.2, min(2.0, self.H - 0.3))
                if not self._wall_free(wall, s - w / 2, s + w / 2, y - h / 2, y + h / 2):
                    continue
                x, z, yaw = self.wall_pose(wall, s, 0.0)
                if clock:
                    face = trimesh.creation.cylinder(radius=w / 2, height=0.04, sections=24)
                    hands = box((0.01, w * 0.35, 0.01), (0, w * 0.12, 0.025))
                    mesh = _merge([face.apply_translation((0, y, 0.02)), hands.apply_translation((0, y, 0))])
                    mat = material(rng, (0.9, 0.9, 0.88), kind=PLAIN)
                else:
                    mesh = box((w, h, 0.03), (0, y, 0.015))
                    mat = material(rng, kind=NOISE, freq=rng.uniform(3, 15), spread=0.8)
                self.add(mesh.apply_transform(_at(x, 0, z, yaw)), name, mat)
                self.wall_spans.append((wall, s - w / 2, s + w / 2, y - h / 2, y + h / 2))
                break

    def items(self) -> None:
        """Small items on top surfaces: a night lamp and the TV on their furniture, the rest anywhere on top."""
        rng = self.rng
        makers = {
            "items_nightLamp": lambda b: _merge([cylinder(0.06, 0.25, b), cone(0.14, 0.18, (b[0], b[1] + 0.22, b[2]))]),
            "items_vase": lambda b: _merge(
                [cylinder(0.06, 0.22, b, 12), ellipsoid((0.08, 0.08, 0.08), (b[0], b[1] + 0.08, b[2]))]
            ),
            "items_bowl": lambda b: ellipsoid((0.1, 0.05, 0.1), (b[0], b[1] + 0.03, b[2])),
            "items_mug": lambda b: _merge(
                [cylinder(0.045, 0.1, b, 12), box((0.02, 0.05, 0.02), (b[0] + 0.055, b[1] + 0.05, b[2]))]
            ),
            "items_plate": lambda b: cylinder(0.12, 0.02, b, 20),
            "items_phone": lambda b: box((0.075, 0.01, 0.15), (b[0], b[1] + 0.005, b[2])),
        }
        used: list[tuple[float, float, float]] = []

        def spot(surface: tuple[float, float, float, float, float], r: float) -> tuple[float, float, float] | None:
            x0, x1, z0, z1, y = surface
            for _ in range(20):
                if x1 - x0 < 2 * r or z1 - z0 < 2 * r:
                    return None
                p = (rng.uniform(x0 + r, x1 - r), y, rng.uniform(z0 + r, z1 - r))
                if all(
                    (p[0] - q[0]) ** 2 + (p[2] - q[2]) ** 2 > (r + 0.12) ** 2 or abs(p[1] - q[1]) > 0.01 for q in used
                ):
                    used.append(p)
                    return p
            return None

        surfaces = sorted(self.surfaces, key=lambda s: s[4])
        if not surfaces:
            return
        # the TV goes on the lowest wide surface (the TV stand), the lamp on the lowest (the night table)
        tv_surface = max(surfaces, key=lambda s: (s[1] - s[0]) * (s[3] - s[2]) / (1 + s[4]))
        p = spot(tv_surface, 0.12) if present(rng, "items_tv") else None  # wide but thin: depth for its foot only
        if p is not None:
            tw = rng.uniform(0.7, min(1.3, max(0.75, tv_surface[1] - tv_surface[0])))
            tv = _merge([box((tw, tw * 0.58, 0.05), (0, 0.08 + tw * 0.29, 0)), box((0.25, 0.04, 0.18), (0, 0.02, 0))])
            yaw = np.arctan2(self.W / 2 - p[0], self.D / 2 - p[2])
            self.add(
                tv.apply_transform(_at(*p, yaw)), "items_tv", material(rng, (0.05, 0.05, 0.06), kind=PLAIN, spread=0.3)
            )
        for name, make in makers.items():
            if not present(rng, name):
                continue
            for _ in range(1 if name != "items_mug" else int(rng.integers(1, 3))):
                surface = surfaces[0] if name == "items_nightLamp" else surfaces[int(rng.integers(len(surfaces)))]
                p = spot(surface, 0.13)
                if p is not None:
                    glow = 1.5 if name == "items_nightLamp" and rng.random() < 0.3 else 0.0
                    self.add(make(p), name, material(rng, spread=0.6, glow=glow))
        for _ in range(int(rng.integers(0, 3))):  # unlabelled clutter: books, boxes
            surface = surfaces[int(rng.integers(len(surfaces)))]
            p = spot(surface, 0.1)
            if p is not None:
                size = tuple(rng.uniform(0.05, 0.25, 3))
                self.add(box(size, (p[0], p[1] + size[1] / 2, p[2])), "void", material(rng))

    def free_floor_point(self, margin: float, tries: int = 200) -> tuple[float, float] | None:
        """A random floor point at least `margin` from walls and furniture."""
        for _ in range(tries):
            x, z = self.rng.uniform(margin, self.W - margin), self.rng.uniform(margin, self.D - margin)
            if not any(_overlaps((x, x, z, z), fp, margin) for fp in self.scene.footprints):
                return x, z
        return None

    def dog_and_clutter(self) -> None:
        """Perhaps a dog on the open floor, and perhaps unlabelled boxes or baskets."""
        p = self.free_floor_point(0.45) if present(self.rng, "live_dog") else None
        if p is not None:
            yaw = self.rng.uniform(-np.pi, np.pi)
            fur = material(
                self.rng,
                self.rng.choice([(0.55, 0.35, 0.15), (0.1, 0.08, 0.06), (0.85, 0.75, 0.55)]),
                kind=NOISE,
                freq=20,
                spread=0.2,
            )
            self.add(model_dog(self.rng).apply_transform(_at(p[0], 0, p[1], yaw)), "live_dog", fur)
            self.scene.footprints.append((p[0] - 0.35, p[0] + 0.35, p[1] - 0.35, p[1] + 0.35))
        for _ in range(int(self.rng.integers(0, 3))):
            p = self.free_floor_point(0.3)
            if p is not None:
                size = tuple(self.rng.uniform(0.2, 0.5, 3))
                self.add(box(size, (p[0], size[1] / 2, p[1])), "void", material(self.rng))
                self.scene.footprints.append(
                    (p[0] - size[0] / 2, p[0] + size[0] / 2, p[1] - size[2] / 2, p[1] + size[2] / 2)
                )

    def lights(self) -> None:
        """One to three point lights near the ceiling."""
        for _ in range(int(self.rng.integers(1, 4))):
            pos = np.array(
                [
                    self.rng.uniform(0.4, self.W - 0.4),
                    self.H - self.rng.uniform(0.2, 0.5),
                    self.rng.uniform(0.4, self.D - 0.4),
                ]
            )
            self.scene.lights.append((pos, float(self.rng.uniform(0.5, 1.2))))


def build_room(rng: np.random.Generator, labels: LabelTable) -> tuple[Scene, RoomBuilder]:
    """A random bedroom: shell, furniture, wall decor, items, perhaps a dog, and lights; classes drawn by PRESENCE."""
    room = RoomBuilder(rng, labels)
    room.shell()
    room.furniture()
    room.wall_decor()
    room.items()
    room.dog_and_clutter()
    room.lights()
    return room.scene, room
