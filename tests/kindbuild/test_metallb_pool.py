"""Each kind cluster's LoadBalancer pool: its own block on the shared kind network."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from outpost_scenarios.kindbuild.commands import BuildError
from outpost_scenarios.kindbuild.metallb import BLOCK, carve_pool, pool_objects


def addresses(pool):
    first, last = (int(ip_address(a)) for a in pool)
    return set(range(first, last + 1))


def test_pool_is_a_block_in_the_upper_half_of_the_network():
    assert carve_pool("172.18.0.0/16", "172.18.0.2") == ("172.18.128.16", "172.18.128.23")


def test_clusters_with_different_nodes_get_disjoint_pools_clear_of_container_addresses():
    network = ip_network("172.18.0.0/16")
    pools = [addresses(carve_pool(str(network), f"172.18.0.{n}")) for n in range(2, 60)]
    assert sum(len(p) for p in pools) == len(set().union(*pools)) == 58 * BLOCK
    lowest = min(min(p) for p in pools)
    assert lowest >= int(network.network_address) + network.num_addresses // 2


def test_a_network_too_small_for_the_node_is_refused():
    assert carve_pool("10.9.0.0/24", "10.9.0.5") == ("10.9.0.168", "10.9.0.175")
    with pytest.raises(BuildError, match="too small"):
        carve_pool("10.9.0.0/24", "10.9.0.20")
    with pytest.raises(BuildError, match="not an IPv4 address"):
        carve_pool("10.9.0.0/24", "10.8.0.5")


def test_pool_objects_advertise_the_pool_in_l2():
    pool, advertisement = pool_objects("172.18.128.16", "172.18.128.23")
    assert pool["spec"]["addresses"] == ["172.18.128.16-172.18.128.23"]
    assert advertisement["kind"] == "L2Advertisement"
    assert advertisement["spec"]["ipAddressPools"] == [pool["metadata"]["name"]]
