-- Housing & construction bureau: houses (with their building) and rental filings.
-- Habits: house and building codes, addresses (坐落) without the province prefix,
-- rental periods as timestamps, lessor/lessee ID numbers in one 证件号码 column
-- that sometimes holds a passport or is '-'.

CREATE TABLE fw_jbxx (                    -- 房屋基本信息
    fwbm      varchar(24) PRIMARY KEY,      -- 房屋编码
    ldbm      varchar(20) NOT NULL,         -- 楼栋编码
    zl        varchar(200) NOT NULL,        -- 坐落
    jzmj      numeric(10,2),                -- 建筑面积 m²
    fwyt      varchar(10),                  -- 房屋用途 住宅 / 商业 / 办公
    qszt      varchar(10),                  -- 权属状态
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);

CREATE TABLE zl_ba (                      -- 租赁备案
    babh      varchar(20) PRIMARY KEY,      -- 备案编号
    fwbm      varchar(24) NOT NULL REFERENCES fw_jbxx(fwbm),
    czrxm     varchar(50),                  -- 出租人姓名
    czrzjhm   varchar(24),                  -- 出租人证件号码
    chzrxm    varchar(50) NOT NULL,         -- 承租人姓名
    chzrzjhm  varchar(24),                  -- 承租人证件号码
    zlqsrq    timestamp NOT NULL,           -- 租赁起始日期
    zlzzrq    timestamp,                    -- 租赁终止日期
    yzj       numeric(10,2),                -- 月租金
    bazt      varchar(4) NOT NULL DEFAULT '有效',  -- 备案状态 有效 / 注销
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);
ALTER TABLE fw_jbxx REPLICA IDENTITY FULL;
ALTER TABLE zl_ba REPLICA IDENTITY FULL;
