//! The simulated network: data centres by region with their round trips to
//! the tag registry and to the origin (both placed in North America East,
//! where a Durable Object lands when it is first used from there), their
//! share of the traffic and their time zone (for the diurnal rate).
//!
//! Round trips are typical public-internet figures from North America East
//! (Ashburn) to each region's large Cloudflare locations: a few ms inside the
//! region, ~70–90 ms across the Atlantic, ~150–250 ms to Asia, Africa and
//! Oceania. They are inputs, not measurements; change them in [`REGIONS`].

/// One region of data centres.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub name: &'static str,
    /// Data centres in this region (out of 300).
    pub dcs: usize,
    /// Share of the world's requests served in this region.
    pub traffic: f64,
    /// Round trip from this region to the registry (North America East), ms.
    pub registry_rtt_ms: u64,
    /// Round trip to the origin (also North America East), ms.
    pub origin_rtt_ms: u64,
    /// UTC offset of the region's local time, hours.
    pub utc_offset_h: f64,
}

pub const REGIONS: [Region; 10] = [
    Region {
        name: "na-east",
        dcs: 30,
        traffic: 0.17,
        registry_rtt_ms: 12,
        origin_rtt_ms: 15,
        utc_offset_h: -5.0,
    },
    Region {
        name: "na-west",
        dcs: 30,
        traffic: 0.13,
        registry_rtt_ms: 70,
        origin_rtt_ms: 72,
        utc_offset_h: -8.0,
    },
    Region {
        name: "south-america",
        dcs: 30,
        traffic: 0.06,
        registry_rtt_ms: 140,
        origin_rtt_ms: 145,
        utc_offset_h: -3.0,
    },
    Region {
        name: "europe-west",
        dcs: 50,
        traffic: 0.22,
        registry_rtt_ms: 85,
        origin_rtt_ms: 88,
        utc_offset_h: 1.0,
    },
    Region {
        name: "europe-east",
        dcs: 30,
        traffic: 0.07,
        registry_rtt_ms: 115,
        origin_rtt_ms: 118,
        utc_offset_h: 2.0,
    },
    Region {
        name: "middle-east",
        dcs: 15,
        traffic: 0.03,
        registry_rtt_ms: 165,
        origin_rtt_ms: 170,
        utc_offset_h: 3.0,
    },
    Region {
        name: "africa",
        dcs: 25,
        traffic: 0.03,
        registry_rtt_ms: 230,
        origin_rtt_ms: 235,
        utc_offset_h: 1.0,
    },
    Region {
        name: "india",
        dcs: 20,
        traffic: 0.07,
        registry_rtt_ms: 210,
        origin_rtt_ms: 215,
        utc_offset_h: 5.5,
    },
    Region {
        name: "asia-east",
        dcs: 45,
        traffic: 0.17,
        registry_rtt_ms: 175,
        origin_rtt_ms: 180,
        utc_offset_h: 9.0,
    },
    Region {
        name: "oceania",
        dcs: 25,
        traffic: 0.05,
        registry_rtt_ms: 215,
        origin_rtt_ms: 220,
        utc_offset_h: 10.0,
    },
];

/// One data centre.
#[derive(Debug, Clone)]
pub struct DataCentre {
    pub index: usize,
    pub region: usize,
    /// Share of the world's requests (before the diurnal factor).
    pub traffic: f64,
    /// Isolates of the worker running here.
    pub isolates: usize,
}

/// `count` data centres spread over the regions in proportion to
/// [`Region::dcs`], ordered so that every prefix of the list covers the
/// regions in proportion (the simulator runs a prefix).
pub fn data_centres(count: usize, mean_isolates: usize) -> Vec<DataCentre> {
    let total_dcs: usize = REGIONS.iter().map(|r| r.dcs).sum();
    let mut per_region: Vec<usize> = REGIONS
        .iter()
        .map(|r| (r.dcs * count).div_ceil(total_dcs).max(1))
        .collect();
    // Trim the rounding surplus from the largest regions.
    while per_region.iter().sum::<usize>() > count.max(REGIONS.len()) {
        let largest = (0..per_region.len())
            .max_by_key(|i| per_region[*i])
            .unwrap_or(0);
        per_region[largest] -= 1;
    }
    // Proportional round robin: each next data centre comes from the region
    // furthest behind its share, so every prefix of the list is a
    // proportional (stratified) sample of the regions.
    let total: usize = per_region.iter().sum();
    let mut placed = vec![0usize; per_region.len()];
    let mut order: Vec<usize> = Vec::with_capacity(total);
    for position in 0..total {
        let behind = |r: usize| {
            per_region[r] as f64 * (position + 1) as f64 / total as f64 - placed[r] as f64
        };
        let region = (0..per_region.len())
            .filter(|r| placed[*r] < per_region[*r])
            .max_by(|a, b| behind(*a).total_cmp(&behind(*b)).then(b.cmp(a)))
            .unwrap_or(0);
        placed[region] += 1;
        order.push(region);
    }
    let n = order.len();
    let mean_traffic = 1.0 / n as f64;
    order
        .into_iter()
        .enumerate()
        .map(|(index, region)| {
            let traffic = REGIONS[region].traffic / per_region[region] as f64;
            let isolates = ((mean_isolates as f64 * traffic / mean_traffic).round() as usize)
                .clamp(2, mean_isolates * 4);
            DataCentre {
                index,
                region,
                traffic,
                isolates,
            }
        })
        .collect()
}

/// Traffic relative to the daily mean at `utc_hour` in a region: a peak in
/// the local evening, a trough before dawn (0.4 to 1.6 of the mean).
pub fn diurnal(region: &Region, utc_hour: f64) -> f64 {
    let local = (utc_hour + region.utc_offset_h).rem_euclid(24.0);
    1.0 + 0.6 * ((local - 20.0) / 24.0 * std::f64::consts::TAU).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_hundred_data_centres_cover_every_region_with_the_whole_traffic() {
        let dcs = data_centres(300, 30);
        assert_eq!(dcs.len(), 300);
        let traffic: f64 = dcs.iter().map(|d| d.traffic).sum();
        assert!((traffic - 1.0).abs() < 1e-9);
        for region in 0..REGIONS.len() {
            assert!(dcs.iter().any(|d| d.region == region));
        }
        // A prefix of the list is a stratified sample.
        let first: std::collections::HashSet<usize> =
            dcs.iter().take(20).map(|d| d.region).collect();
        assert_eq!(
            first.len(),
            10,
            "the first twenty data centres cover the ten regions"
        );
        let europe_west = dcs.iter().take(30).filter(|d| d.region == 3).count();
        assert_eq!(europe_west, 5, "50 of 300 data centres: 5 of the first 30");
    }

    #[test]
    fn diurnal_peaks_in_the_local_evening() {
        let europe = &REGIONS[3];
        assert!(diurnal(europe, 19.0) > diurnal(europe, 4.0));
        assert!((diurnal(europe, 19.0) - 1.6).abs() < 1e-9);
    }
}
