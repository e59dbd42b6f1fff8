import numpy as np
import pytest

from data_pipeline.ingest import ingest_osm
from data_pipeline.snap import Snapper
from nareta.errors import InputError
from tests.data_pipeline.test_ingest import TINY_OSM


@pytest.fixture(scope="module")
def tiny_snapper(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "tiny.osm"
    path.write_text(TINY_OSM)
    return Snapper(ingest_osm(path).graph)


def test_snap_to_two_way_street(tiny_snapper):
    graph = tiny_snapper.graph
    # 0.00005 degree north of node 2 (the middle of way 100): about 5.6 m from the road.
    snaps = tiny_snapper.snap([24.941], [60.17005], max_distance_m=20)
    segment, twin = int(snaps.segment[0]), int(snaps.twin[0])
    paths = {tuple(graph["path_osm_node"][graph.segment_path(s)]) for s in (segment, twin)}
    assert paths == {(1, 2, 3), (3, 2, 1)}
    assert snaps.distance_m[0] == pytest.approx(5.56, abs=0.1)
    assert snaps.fraction[0] == pytest.approx(0.5, abs=0.01)
    assert snaps.lat[0] == pytest.approx(60.170, abs=1e-6)


def test_snap_one_way_has_no_twin(tiny_snapper):
    graph = tiny_snapper.graph
    snaps = tiny_snapper.snap([24.94201], [60.1695], max_distance_m=20)
    assert graph["path_osm_node"][graph.segment_path(int(snaps.segment[0]))].tolist() == [5, 3]
    assert snaps.twin[0] == -1


def test_snap_limits(tiny_snapper):
    snaps = tiny_snapper.snap([24.941, 25.5], [60.17005, 60.5], max_distance_m=20)
    assert snaps.found.tolist() == [True, False]
    assert snaps.distance_m[1] > 10_000
    with pytest.raises(InputError, match="finite"):
        tiny_snapper.snap([np.nan], [60.0], max_distance_m=20)
    with pytest.raises(InputError, match="out of range"):
        tiny_snapper.snap([200.0], [60.0], max_distance_m=20)
    # the north pole and the antimeridian: valid coordinates the city's projection cannot
    # place (infinite in UTM): simply not near any road
    far = tiny_snapper.snap([0.0, -180.0, 24.941], [90.0, 0.0, 60.17005], max_distance_m=20)
    assert far.found.tolist() == [False, False, True]


def test_snap_bundled_nodes_exactly(bundled_graph):
    snapper = Snapper(bundled_graph)
    snaps = snapper.snap(bundled_graph["node_lon"], bundled_graph["node_lat"], max_distance_m=1)
    assert snaps.found.all()
    assert snaps.distance_m.max() < 1e-3
